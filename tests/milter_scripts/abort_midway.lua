-- Case 4: a risky message is aborted after its headers (RSET, or the client went away);
-- the next message on the connection is clean and must be judged on its own.
dofile(scripts .. "/common.lua")

run("abort_midway", function()
  local conn = connect()
  hello(conn)
  send_headers(conn, message("block", "QABORT1"))
  ok(mt.bodystring(conn, "half a body"), "mt.bodystring")
  ok(mt.abort(conn), "mt.abort")
  mt.echo("aborted risky message after its headers")

  local r = send(conn, message("clean", "QABORT2"))
  check(r == "continue", "clean message after abort: expected continue, got " .. r)
  expect_no_edits(conn, "clean message after abort")
  mt.echo("eom clean " .. r)

  -- The same again without an explicit abort: a new MAIL also starts a new message.
  ok(mt.abort(conn), "mt.abort")
  send_headers(conn, message("block", "QABORT3"))
  local r2 = send(conn, message("clean", "QABORT4"))
  check(r2 == "continue", "clean message after an unfinished one: expected continue, got " .. r2)
  expect_no_edits(conn, "clean message after an unfinished one")
  mt.echo("eom clean-after-unfinished " .. r2)
  mt.disconnect(conn)
end)
