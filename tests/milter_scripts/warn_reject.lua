-- [milter] on_warn = "reject", add_headers = "always": a warn message is refused with its
-- own explanation, and even a clean message is marked "pass" (with no Rules header, as it
-- has no findings).
dofile(scripts .. "/common.lua")

run("warn_reject", function()
  local conn = connect()
  hello(conn)
  local r = send(conn, message("warn", "QWR1"))
  check(r == "replycode", "warn: expected replycode, got " .. r)
  expect_smtp_reply(conn, "550", "5.7.1", REASON_WARN, "warn")
  expect_no_edits(conn, "warn")
  mt.echo("eom warn " .. r)
  ok(mt.abort(conn), "mt.abort")

  r = send(conn, message("clean", "QWR2"))
  check(r == "continue", "clean: expected continue, got " .. r)
  expect_header(conn, "X-Mailguard-Verdict", "pass", "clean")
  expect_header(conn, "X-Mailguard-Score", "0", "clean")
  check(not added(conn, "X-Mailguard-Rules"), "clean: Rules header without findings")
  mt.echo("eom clean " .. r .. " verdict=[" .. mt.getheader(conn, "X-Mailguard-Verdict", 0) .. "]")
  mt.disconnect(conn)
end)
