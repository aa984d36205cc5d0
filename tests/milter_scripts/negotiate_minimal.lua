-- Case 1b: the MTA offers no no-reply flags, no optional steps to skip and only the
-- header-add action. The milter must ask for nothing else and answer every single step
-- (HELO, DATA, unknown command, each header, EOH, body) with continue; miltertest reads a
-- reply after each one, so a missing or extra reply shows up as a timeout or a wrong code.
-- Without SMFIP_HDR_LEADSPC the added header values carry no leading space.
dofile(scripts .. "/common.lua")

run("negotiate_minimal", function()
  local conn = connect({version = 6, steps = 0, actions = SMFIF_ADDHDRS})
  check(mt.test_action(conn, SMFIF_ADDHDRS), "ADDHDRS was offered and is needed")
  for _, name in ipairs({"SMFIF_QUARANTINE", "SMFIF_SETSYMLIST", "SMFIF_CHGHDRS"}) do
    check(not mt.test_action(conn, _G[name]), name .. " requested but not offered")
  end
  for _, name in ipairs({"SMFIP_NOCONNECT", "SMFIP_NOHELO", "SMFIP_NOMAIL", "SMFIP_NORCPT",
      "SMFIP_NOBODY", "SMFIP_NOHDRS", "SMFIP_NOEOH", "SMFIP_NOUNKNOWN", "SMFIP_NODATA",
      "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_MAIL", "SMFIP_NR_RCPT", "SMFIP_NR_DATA",
      "SMFIP_NR_UNKN", "SMFIP_NR_HDR", "SMFIP_NR_EOH", "SMFIP_NR_BODY", "SMFIP_HDR_LEADSPC"}) do
    check(not mt.test_option(conn, _G[name]), name .. " requested but not offered")
  end
  mt.echo("negotiated nothing that was not offered")

  hello(conn) -- CONNECT and HELO, each answered
  ok(mt.unknown(conn, "XYZZY"), "mt.unknown")
  expect(conn, "continue", "UNKNOWN")

  -- Every later step is checked for its own continue inside send_headers/send_body.
  local m = message("warn", "QMIN1")
  local r = send(conn, m)
  check(r == "continue", "warn message: expected continue, got " .. r)
  expect_header(conn, "X-Mailguard-Verdict", "warn", "warn message")
  check(added(conn, "X-Mailguard-Verdict", "warn"), "value without leading space expected")
  check(not added(conn, "X-Mailguard-Verdict", " warn"), "leading space sent without LEADSPC")
  expect_header(conn, "X-Mailguard-Score", "57", "warn message")
  mt.echo("eom warn " .. r .. " verdict=[" .. mt.getheader(conn, "X-Mailguard-Verdict", 0) .. "]")

  -- And a second message on the same connection, still answered step by step.
  ok(mt.abort(conn), "mt.abort")
  r = send(conn, message("block", "QMIN2"))
  check(r == "replycode", "block message: expected replycode, got " .. r)
  expect_smtp_reply(conn, "550", "5.7.1", REASON_BLOCK, "block message")
  mt.echo("eom block " .. r)
  mt.disconnect(conn)
end)
