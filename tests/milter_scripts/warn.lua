-- Case 5: 12 personal addresses in Cc -> warn: accepted (continue) with the X-Mailguard
-- headers. miltertest negotiates SMFIP_HDR_LEADSPC, so the milter sends each value with the
-- space that follows the colon: " warn", not "warn".
dofile(scripts .. "/common.lua")

run("warn", function()
  local conn = connect()
  check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "HDR_LEADSPC offered but not taken")
  hello(conn)
  local r = send(conn, message("warn", "QWARN1"))
  check(r == "continue", "expected continue, got " .. r)
  check(added(conn, "X-Mailguard-Verdict", " warn"), "X-Mailguard-Verdict ' warn' not added")
  check(not added(conn, "X-Mailguard-Verdict", "warn"), "value sent without its leading space")
  check(added(conn, "X-Mailguard-Score", " 57"), "X-Mailguard-Score ' 57' not added")
  check(added(conn, "X-Mailguard-Rules", " MG101 MG102 MG103"), "X-Mailguard-Rules not added")
  check(not added(conn, "X-Mailguard-Action"), "X-Mailguard-Action added in enforce mode")
  check(not mt.eom_check(conn, MT_QUARANTINE), "warn message quarantined")
  for _, name in ipairs({"X-Mailguard-Verdict", "X-Mailguard-Score", "X-Mailguard-Rules"}) do
    mt.echo(name .. ":" .. mt.getheader(conn, name, 0))
    check(mt.getheader(conn, name, 1) == nil, name .. " added twice")
  end
  mt.echo("eom warn " .. r)
  mt.disconnect(conn)
end)
