-- Case 6: monitor mode never refuses. A risky message is accepted with the verdict headers
-- and X-Mailguard-Action saying what enforce mode would have done; a warn message gets no
-- Action header (enforce would accept it too); a clean one gets nothing; an unreadable one
-- (verdict error) is accepted with "would tempfail".
dofile(scripts .. "/common.lua")

run("monitor", function()
  local conn = connect()
  hello(conn)

  local r = send(conn, message("block", "QMON1"))
  check(r == "continue", "block in monitor mode: expected continue, got " .. r)
  check(not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", REASON_BLOCK), "refused anyway")
  expect_header(conn, "X-Mailguard-Verdict", "block", "block")
  expect_header(conn, "X-Mailguard-Score", "85", "block")
  expect_header(conn, "X-Mailguard-Rules", "MG101 MG102 MG103", "block")
  expect_header(conn, "X-Mailguard-Action", "monitor; enforce mode would reject", "block")
  check(not mt.eom_check(conn, MT_QUARANTINE), "block in monitor mode: quarantined")
  mt.echo("message 1 block " .. r .. " action=[" .. mt.getheader(conn, "X-Mailguard-Action", 0) .. "]")
  ok(mt.abort(conn), "mt.abort")

  r = send(conn, message("warn", "QMON2"))
  check(r == "continue", "warn in monitor mode: expected continue, got " .. r)
  expect_header(conn, "X-Mailguard-Verdict", "warn", "warn")
  check(not added(conn, "X-Mailguard-Action"), "warn: Action header although nothing differs")
  mt.echo("message 2 warn " .. r)
  ok(mt.abort(conn), "mt.abort")

  r = send(conn, message("clean", "QMON3"))
  check(r == "continue", "clean in monitor mode: expected continue, got " .. r)
  expect_no_edits(conn, "clean")
  mt.echo("message 3 clean " .. r)
  ok(mt.abort(conn), "mt.abort")

  r = send(conn, message("unreadable", "QMON4"))
  check(r == "continue", "unreadable in monitor mode: expected continue, got " .. r)
  expect_header(conn, "X-Mailguard-Verdict", "error", "unreadable")
  expect_header(conn, "X-Mailguard-Action", "monitor; enforce mode would tempfail", "unreadable")
  mt.echo("message 4 unreadable " .. r)
  mt.disconnect(conn)
end)
