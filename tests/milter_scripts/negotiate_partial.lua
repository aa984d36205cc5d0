-- Case 1c: the MTA offers a mix -- some no-reply flags (including NR_MAIL, which the milter
-- must not take: it answers MAIL with accept for out-of-scope mail), NOHELO, and actions the
-- milter has no use for. The milter must request exactly the intersection of what it
-- wants with what was offered.
dofile(scripts .. "/common.lua")

run("negotiate_partial", function()
  local steps = SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_NR_MAIL | SMFIP_NOHELO | SMFIP_NOBODY
  local actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_CHGBODY
  local conn = connect({version = 6, steps = math.floor(steps), actions = math.floor(actions)})

  local want_actions = {SMFIF_ADDHDRS = true, SMFIF_CHGHDRS = true, SMFIF_ADDRCPT = false,
    SMFIF_CHGBODY = false, SMFIF_QUARANTINE = false, SMFIF_SETSYMLIST = false}
  for name, want in pairs(want_actions) do
    check(mt.test_action(conn, _G[name]) == want, name .. " should be " .. tostring(want))
  end
  local want_options = {SMFIP_NR_HDR = true, SMFIP_NR_BODY = true, SMFIP_NOHELO = true,
    SMFIP_NR_MAIL = false, SMFIP_NOBODY = false, SMFIP_NR_RCPT = false, SMFIP_NR_EOH = false,
    SMFIP_NODATA = false, SMFIP_HDR_LEADSPC = false, SMFIP_NR_CONN = false}
  for name, want in pairs(want_options) do
    check(mt.test_option(conn, _G[name]) == want, name .. " should be " .. tostring(want))
  end
  mt.echo("negotiated the intersection")

  hello(conn)
  local r = send(conn, message("block", "QPART1"))
  check(r == "replycode", "block message: expected replycode, got " .. r)
  expect_smtp_reply(conn, "550", "5.7.1", REASON_BLOCK, "block message")
  mt.echo("eom block " .. r)
  mt.disconnect(conn)
end)
