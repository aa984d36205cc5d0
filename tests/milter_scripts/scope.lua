-- Case 9: which mail is in scope. Parameters (miltertest -D):
--   ip      client address sent in the connection information
--   auth    if set, {auth_authen} at the MAIL stage (an SMTP-authenticated user)
--   daemon  if set, {daemon_name} at the CONNECT stage (Postfix's service name)
--   client_addr  if set, {client_addr} at the CONNECT stage (with ip=unspec, the only
--           address the milter gets)
--   offer   if "minimal", negotiate no no-reply flags: every step is then answered
--   outcome "reject": in scope, the risky message is refused at end of message;
--           "accept": out of scope, accepted at MAIL and never judged or altered.
-- After an accept at MAIL a real MTA stops telling the milter about the message;
-- miltertest does not know that and streams the rest when the script asks it to. The
-- milter must stay in step: no reply to the waived steps, continue at end of message.
dofile(scripts .. "/common.lua")

run("scope", function()
  local conn
  if offer == "minimal" then
    conn = connect({version = 6, steps = 0, actions = SMFIF_ADDHDRS})
  else
    conn = connect()
  end
  local opts = {ip = ip, host = "outside.example"}
  -- One macro packet per stage, as an MTA sends them.
  local macros = {}
  if daemon ~= nil then
    macros[#macros + 1] = "{daemon_name}"
    macros[#macros + 1] = daemon
  end
  if client_addr ~= nil then
    macros[#macros + 1] = "{client_addr}"
    macros[#macros + 1] = client_addr
  end
  if #macros > 0 then
    opts.connect_macros = macros
  end
  hello(conn, opts)

  local m = message("block", "QSCOPE1")
  if auth ~= nil then
    m.mail_macros = {"i", "QSCOPE1", "{auth_authen}", auth, "{auth_type}", "PLAIN"}
  end
  if outcome == "accept" then
    m.mail_reply = "accept"
    m.step_reply = "accept"
  end
  local r = send(conn, m)
  if outcome == "accept" then
    check(r == "continue", "out of scope: end of message answered " .. r .. ", not continue")
    check(not mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", REASON_BLOCK), "refused")
    expect_no_edits(conn, "out of scope")
    mt.echo("mail accept eom " .. r)
  else
    check(outcome == "reject", "outcome must be accept or reject")
    check(r == "replycode", "in scope: expected replycode, got " .. r)
    expect_smtp_reply(conn, "550", "5.7.1", REASON_BLOCK, "in scope")
    mt.echo("mail continue eom " .. r)
  end
  mt.disconnect(conn)
end)
