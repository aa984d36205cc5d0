-- Case 8: [milter] on_block = "tempfail": refused with 451 4.7.1 and the same explanation.
dofile(scripts .. "/common.lua")

run("tempfail", function()
  local conn = connect()
  hello(conn)
  local r = send(conn, message("block", "QTEMP1"))
  check(r == "replycode", "expected replycode, got " .. r)
  expect_smtp_reply(conn, "451", "4.7.1", REASON_BLOCK, "tempfail")
  check(not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", REASON_BLOCK), "550 instead of 451")
  expect_no_edits(conn, "tempfail")
  mt.echo("eom block " .. r .. " 451 4.7.1")
  mt.disconnect(conn)
end)
