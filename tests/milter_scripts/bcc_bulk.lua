-- Case 10: the right way to mail 300 people: To: undisclosed-recipients:; and 300
-- envelope recipients (Bcc). Passes: continue, no headers, no refusal.
dofile(scripts .. "/common.lua")

run("bcc_bulk", function()
  local conn = connect()
  hello(conn)
  local m = message("bcc", "QBCC1")
  check(#m.rcpts == 300, "expected 300 envelope recipients")
  local r = send(conn, m)
  check(r == "continue", "expected continue, got " .. r)
  expect_no_edits(conn, "bcc bulk")
  mt.echo("eom bcc " .. r .. " rcpts=" .. #m.rcpts)
  mt.disconnect(conn)
end)
