-- A message the engine cannot read (no `Name: value` header field) gets on_error, which is
-- tempfail by default: 451 4.7.1 with the generic text, never a silent accept.
dofile(scripts .. "/common.lua")

run("unreadable", function()
  local conn = connect()
  hello(conn)
  local r = send(conn, message("unreadable", "QUNR1"))
  check(r == "replycode", "expected replycode, got " .. r)
  expect_smtp_reply(conn, "451", "4.7.1", ERROR_TEXT, "unreadable")
  expect_no_edits(conn, "unreadable")
  mt.echo("eom unreadable " .. r)
  mt.disconnect(conn)
end)
