-- Case 1a: miltertest offers everything libmilter knows. The milter must ask for the
-- header-add, header-change (to remove forged X-Mailguard-* fields) and quarantine
-- actions, the macro list, and waive every reply it can do
-- without -- except end of headers, whose reply is the decision for a message its header
-- block settles (and the accept of out-of-scope mail).
dofile(scripts .. "/common.lua")

run("negotiate_default", function()
  local conn = connect({version = 6})

  local function report(kind, names, test)
    for _, name in ipairs(names) do
      check(_G[name] ~= nil, "miltertest does not define " .. name)
      mt.echo(kind .. " " .. name .. " " .. tostring(test(conn, _G[name])))
    end
  end

  report("action", {"SMFIF_ADDHDRS", "SMFIF_QUARANTINE", "SMFIF_SETSYMLIST", "SMFIF_CHGHDRS",
    "SMFIF_CHGBODY", "SMFIF_ADDRCPT", "SMFIF_DELRCPT", "SMFIF_CHGFROM"}, mt.test_action)
  report("option", {"SMFIP_NOCONNECT", "SMFIP_NOHELO", "SMFIP_NOMAIL", "SMFIP_NORCPT",
    "SMFIP_NOBODY", "SMFIP_NOHDRS", "SMFIP_NOEOH", "SMFIP_NOUNKNOWN", "SMFIP_NODATA",
    "SMFIP_SKIP", "SMFIP_RCPT_REJ", "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_MAIL",
    "SMFIP_NR_RCPT", "SMFIP_NR_DATA", "SMFIP_NR_UNKN", "SMFIP_NR_HDR", "SMFIP_NR_EOH",
    "SMFIP_NR_BODY", "SMFIP_HDR_LEADSPC"}, mt.test_option)

  -- A whole clean message over what was agreed: no step may be answered that was waived
  -- (miltertest would read a stale reply and fall out of step) and the message passes.
  -- The clean message is settled by its header block: accepted at end of headers.
  hello(conn)
  local m = message("clean", "QNEG1")
  local r = send(conn, m)
  check(r == "accept" and m.at_eoh, "clean message: expected accept at EOH, got " .. r)
  expect_no_edits(conn, "clean message")
  mt.echo("clean " .. r .. " at end of headers")
  mt.disconnect(conn)
end)
