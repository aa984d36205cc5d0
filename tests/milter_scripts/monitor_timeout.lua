-- Monitor mode when no verdict can be reached in time (decision_timeout tiny): monitor
-- mode promises never to refuse ("monitor: never refuse, only add headers and log"), and
-- an unreadable message in monitor mode is indeed accepted (monitor.lua). A decision that
-- runs out of time must be accepted too.
dofile(scripts .. "/common.lua")

run("monitor_timeout", function()
  local conn = connect()
  hello(conn)
  local r = send(conn, message("clean", "QMTO1"))
  mt.echo("eom clean " .. r)
  if r ~= "continue" then
    local detail = ""
    if mt.eom_check(conn, MT_SMTPREPLY, "451", "4.7.1", ERROR_TEXT) then
      detail = " (451 4.7.1 " .. ERROR_TEXT .. ")"
    end
    error("monitor mode refused a message whose decision timed out: " .. r .. detail)
  end
  mt.disconnect(conn)
end)
