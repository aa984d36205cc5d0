-- Case 7: [milter] on_block = "quarantine": the risky message is accepted into the hold
-- queue (quarantine request + accept), not refused, and carries the verdict headers.
dofile(scripts .. "/common.lua")

run("quarantine", function()
  local conn = connect()
  check(mt.test_action(conn, SMFIF_QUARANTINE), "QUARANTINE offered but not taken")
  hello(conn)
  local r = send(conn, message("block", "QQUAR1"))
  check(r == "accept", "expected accept, got " .. r)
  check(mt.eom_check(conn, MT_QUARANTINE), "no quarantine request")
  check(mt.eom_check(conn, MT_QUARANTINE, REASON_BLOCK), "quarantine reason differs")
  check(not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", REASON_BLOCK), "also refused")
  expect_header(conn, "X-Mailguard-Verdict", "block", "quarantine")
  expect_header(conn, "X-Mailguard-Score", "85", "quarantine")
  check(not added(conn, "X-Mailguard-Action"), "X-Mailguard-Action added in enforce mode")
  mt.echo("eom block " .. r .. " quarantined")
  ok(mt.abort(conn), "mt.abort")

  -- The next, clean message on the connection is neither held nor marked.
  r = send(conn, message("clean", "QQUAR2"))
  check(r == "continue", "clean after quarantine: expected continue, got " .. r)
  expect_no_edits(conn, "clean after quarantine")
  mt.echo("eom clean " .. r)
  mt.disconnect(conn)
end)
