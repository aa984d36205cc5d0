-- Case 2: 40 personal addresses in Cc (and in the envelope) -> refused at end of message
-- with a 550 5.7.1 the sender can act on; nothing is added to a refused message.
dofile(scripts .. "/common.lua")

run("block", function()
  local conn = connect()
  hello(conn)
  local r = send(conn, message("block", "QBLOCK1"))
  check(r == "replycode", "expected replycode, got " .. r)
  expect_smtp_reply(conn, "550", "5.7.1", REASON_BLOCK, "block")
  -- The whole line must match: the code alone does not (see common.lua).
  check(not mt.eom_check(conn, MT_SMTPREPLY, "550"), "miltertest now matches on the code alone")
  expect_no_edits(conn, "block")
  mt.echo("eom block " .. r)
  mt.disconnect(conn)
end)
