-- Case 7b: on_block = "quarantine" but the MTA cannot quarantine (action not offered):
-- the milter must fall back to refusing, never to accepting.
dofile(scripts .. "/common.lua")

run("quarantine_not_offered", function()
  local conn = connect({version = 6, actions = SMFIF_ADDHDRS})
  check(not mt.test_action(conn, SMFIF_QUARANTINE), "QUARANTINE requested but not offered")
  hello(conn)
  local r = send(conn, message("block", "QNOQ1"))
  check(r == "replycode", "expected replycode, got " .. r)
  expect_smtp_reply(conn, "550", "5.7.1", REASON_BLOCK, "block without quarantine")
  expect_no_edits(conn, "block without quarantine")
  mt.echo("eom block " .. r)
  mt.disconnect(conn)
end)
