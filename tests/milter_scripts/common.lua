-- Helpers shared by the miltertest scripts; each script is
--   dofile(scripts .. "/common.lua")
--   run("name", function() ... end)
-- where `scripts` (this directory) and `port` or `sock` come from `miltertest -D`.
--
-- Every helper raises a Lua error on anything unexpected; run() prints it with a traceback
-- on stderr and miltertest exits 1, which tests/test_milter_miltertest.py reports as a
-- failure. On success run() echoes "PASS name".
--
-- miltertest facts these helpers rely on (Debian's miltertest 1.6.0):
-- * A Lua error makes miltertest exit 1 *without printing the error* -- also the errors its
--   own functions raise, such as "mt.helo(): negotiated SMFIP_NOHELO". Hence run().
-- * mt.negotiate(conn, version, STEPS, ACTIONS): the man page lists actions before steps,
--   but the program reads the third argument as the protocol steps and the fourth as the
--   actions. connect() below takes named fields so no script has to remember that.
-- * Without an explicit mt.conninfo(), miltertest invents a client 12.34.56.78, which is
--   outside the milter's default scope: every connection here sends its own conninfo.
-- * For a step whose reply was waived (SMFIP_NR_*), miltertest reads nothing and
--   mt.getreply() reports SMFIR_CONTINUE; only steps that are not waived say something.
-- * mt.eom_check(conn, MT_SMTPREPLY, code, esc, text) compares the whole reply line
--   "code esc text" with strcmp: the code alone never matches a reply that has text.
-- * EOM requests (added headers, quarantine, reply codes) are forgotten at the next
--   mt.mailfrom(), not at mt.abort(): check them before the next message starts.
-- * mt.macro() accepts any stage byte, not only the four named SMFIC_* constants: the
--   end-of-message stage, where Postfix sends the queue id `i`, is string.byte("E").
-- * mt.header() copies name and value into a 1 KiB stack buffer unchecked: a longer field
--   crashes miltertest ("stack smashing detected", exit 134). Many addresses therefore go
--   into several Cc fields of 20 addresses each.

SENDER = "hr@serviceco.example"
COLLEAGUE = "colleague@serviceco.example"
SUBJECT = "SUBJECT-MARKER quarterly update"
BODY = "Hello all,\r\nBODY-MARKER the payroll details follow.\r\n"
STAGE_EOH = string.byte("N")
STAGE_EOM = string.byte("E")

local REPLY_NAMES = {
  c = "continue", a = "accept", y = "replycode", r = "reject", t = "tempfail",
  d = "discard", p = "progress", ["\0"] = "none",
}

-- ------------------------------------------------------------------ basics

function run(name, body)
  local okay, err = xpcall(body, debug.traceback)
  if not okay then
    io.stderr:write("FAIL " .. name .. ": " .. tostring(err) .. "\n")
    io.stderr:flush()
    mt.echo("FAIL " .. name)
    error(err, 0)
  end
  mt.echo("PASS " .. name)
end

function check(cond, what)
  if not cond then
    error(what, 2)
  end
end

function ok(err, what)
  if err ~= nil then
    error(what .. " failed: " .. tostring(err), 2)
  end
end

function reply(conn)
  local code = math.floor(mt.getreply(conn))
  local ch = string.char(code)
  return REPLY_NAMES[ch] or ("0x" .. string.format("%02x", code))
end

function expect(conn, want, what)
  local got = reply(conn)
  if got ~= want then
    error(what .. ": expected reply " .. want .. ", got " .. got, 2)
  end
end

-- The reply to a step: `want` unless the milter waived it (then miltertest says continue).
local function step_reply(conn, nr_flag, want, what)
  if nr_flag ~= nil and mt.test_option(conn, nr_flag) then
    want = "continue"
  end
  expect(conn, want, what)
end

-- ------------------------------------------------------------------ connections

function sockinfo()
  if sock ~= nil then
    return "unix:" .. sock
  end
  return "inet:" .. port .. "@127.0.0.1"
end

-- Connect; with `offer` = {version=, steps=, actions=} negotiate explicitly (nil fields mean
-- miltertest's defaults: everything libmilter knows), else negotiation happens implicitly.
function connect(offer)
  mt.set_timeout(5) -- seconds a reply may take (default 10): a missing reply fails sooner
  local conn = mt.connect(sockinfo(), 50, 0.1)
  check(conn ~= nil, "mt.connect(" .. sockinfo() .. ") failed")
  if offer ~= nil then
    ok(mt.negotiate(conn, offer.version, offer.steps, offer.actions), "mt.negotiate")
  end
  return conn
end

-- Connection information (and HELO unless the milter opted out of it).
-- opts: ip (default 127.0.0.1), host, connect_macros = {name, value, ...}
function hello(conn, opts)
  opts = opts or {}
  if opts.connect_macros ~= nil then
    ok(mt.macro(conn, SMFIC_CONNECT, table.unpack(opts.connect_macros)), "mt.macro(CONNECT)")
  end
  if mt.test_option(conn, SMFIP_NOCONNECT) then
    return -- given up (scope "all"); miltertest refuses to send a step given up
  end
  ok(mt.conninfo(conn, opts.host or "client.example", opts.ip or "127.0.0.1"), "mt.conninfo")
  step_reply(conn, SMFIP_NR_CONN, "continue", "CONNECT")
  if not mt.test_option(conn, SMFIP_NOHELO) then
    ok(mt.helo(conn, "client.example"), "mt.helo")
    step_reply(conn, SMFIP_NR_HELO, "continue", "HELO")
  end
end

-- ------------------------------------------------------------------ messages

function personal(first, last)
  local t = {}
  for i = first, last do
    t[#t + 1] = "p" .. i .. "@gmail.com"
  end
  return t
end

local function add_cc(headers, rcpts, addrs)
  for k = 1, #addrs, 20 do
    headers[#headers + 1] = {"Cc", table.concat(addrs, ", ", k, math.min(k + 19, #addrs))}
  end
  for _, a in ipairs(addrs) do
    rcpts[#rcpts + 1] = a
  end
end

-- A message as the MTA would stream it. kind:
--   clean       one colleague in To                                   -> pass
--   warn        colleague in To, 12 personal addresses in Cc          -> warn (score 57)
--   block       colleague in To, 40 personal addresses in Cc          -> block (score 85)
--   bcc         To: undisclosed-recipients:;, 300 envelope recipients -> pass
--   unreadable  no `Name: value` header field at all                  -> error
-- The envelope lists every visible recipient, as a real submission would.
function message(kind, queue_id)
  local m = {
    rcpts = {COLLEAGUE},
    headers = {
      {"From", "HR <" .. SENDER .. ">"},
      {"To", COLLEAGUE},
      {"Subject", SUBJECT},
      {"Message-ID", "<" .. kind .. "." .. (queue_id or "x") .. "@serviceco.example>"},
    },
    body = BODY,
  }
  if kind == "warn" then
    add_cc(m.headers, m.rcpts, personal(1, 12))
  elseif kind == "block" then
    add_cc(m.headers, m.rcpts, personal(1, 40))
  elseif kind == "bcc" then
    m.headers[2] = {"To", "undisclosed-recipients:;"}
    m.rcpts = personal(1, 300)
  elseif kind == "unreadable" then
    m.headers = {{"Not A Header Name", "x"}}
  else
    check(kind == "clean", "unknown message kind " .. kind)
  end
  if queue_id ~= nil then
    m.mail_macros = {"i", queue_id}
  end
  return m
end

function header(conn, name, value)
  -- With SMFIP_HDR_LEADSPC the MTA passes the space after the colon, as it is in the message.
  if mt.test_option(conn, SMFIP_HDR_LEADSPC) then
    value = " " .. value
  end
  ok(mt.header(conn, name, value), "mt.header(" .. name .. ")")
end

-- MAIL, RCPTs, DATA, header fields and end of headers. m.mail_macros, m.eoh_macros and
-- (in send_body) m.eom_macros are {name, value, ...} sent just before their stage.
-- m.mail_reply: the expected MAIL reply (default continue); m.step_reply: the expected reply
-- to the later steps when they are not waived (default continue). Without m.step_reply,
-- the milter may decide at end of headers: that reply is returned (else nil) and
-- m.at_eoh set.
function send_headers(conn, m)
  local later = m.step_reply or "continue"
  if m.mail_macros ~= nil then
    ok(mt.macro(conn, SMFIC_MAIL, table.unpack(m.mail_macros)), "mt.macro(MAIL)")
  end
  ok(mt.mailfrom(conn, "<" .. (m.from or SENDER) .. ">"), "mt.mailfrom")
  step_reply(conn, SMFIP_NR_MAIL, m.mail_reply or "continue", "MAIL")
  for _, r in ipairs(m.rcpts) do
    ok(mt.rcptto(conn, "<" .. r .. ">"), "mt.rcptto")
    step_reply(conn, SMFIP_NR_RCPT, later, "RCPT")
  end
  if not mt.test_option(conn, SMFIP_NODATA) then
    ok(mt.data(conn), "mt.data")
    step_reply(conn, SMFIP_NR_DATA, later, "DATA")
  end
  for _, h in ipairs(m.headers) do
    header(conn, h[1], h[2])
    step_reply(conn, SMFIP_NR_HDR, later, "HEADER " .. h[1])
  end
  if m.eoh_macros ~= nil then
    ok(mt.macro(conn, STAGE_EOH, table.unpack(m.eoh_macros)), "mt.macro(EOH)")
  end
  if mt.test_option(conn, SMFIP_NOEOH) then
    return nil -- given up: no decision is made there
  end
  ok(mt.eoh(conn), "mt.eoh")
  if m.step_reply == nil and not mt.test_option(conn, SMFIP_NR_EOH) then
    local r = reply(conn)
    if r ~= "continue" then
      m.at_eoh = true
      return r
    end
    return nil
  end
  step_reply(conn, SMFIP_NR_EOH, later, "EOH")
  return nil
end

-- Body and end of message; returns the end-of-message reply by name.
function send_body(conn, m)
  if not mt.test_option(conn, SMFIP_NOBODY) then
    ok(mt.bodystring(conn, m.body), "mt.bodystring")
    step_reply(conn, SMFIP_NR_BODY, m.step_reply or "continue", "BODY")
  end
  if m.eom_macros ~= nil then
    ok(mt.macro(conn, STAGE_EOM, table.unpack(m.eom_macros)), "mt.macro(EOM)")
  end
  ok(mt.eom(conn), "mt.eom")
  return reply(conn)
end

-- The reply that ended the message: at end of headers if the milter decided there.
function send(conn, m)
  local early = send_headers(conn, m)
  if early ~= nil then
    return early
  end
  return send_body(conn, m)
end

-- ------------------------------------------------------------------ end-of-message checks

function added(conn, name, value)
  if value == nil then
    return mt.eom_check(conn, MT_HDRADD, name)
  end
  return mt.eom_check(conn, MT_HDRADD, name, value)
end

function expect_no_edits(conn, what)
  check(not mt.eom_check(conn, MT_HDRADD), what .. ": unexpected header added")
  check(not mt.eom_check(conn, MT_QUARANTINE), what .. ": unexpected quarantine")
end

-- The header value the milter must send: with HDR_LEADSPC it supplies the space itself.
function hv(conn, value)
  if mt.test_option(conn, SMFIP_HDR_LEADSPC) then
    return " " .. value
  end
  return value
end

function expect_header(conn, name, value, what)
  local got = mt.getheader(conn, name, 0)
  if got ~= hv(conn, value) then
    error(what .. ": " .. name .. " = [" .. tostring(got) .. "], expected ["
      .. hv(conn, value) .. "]", 2)
  end
  check(mt.getheader(conn, name, 1) == nil, what .. ": " .. name .. " added twice")
end

-- The refusal texts of mailguard.milter.decision for the messages above.
REASON_BLOCK = "mailguard: would expose 40 external recipients in To/Cc (40 personal addresses)"
  .. " - use Bcc or a mail-merge tool [MG101 MG102 MG103; score 85]"
REASON_WARN = "mailguard: would expose 12 external recipients in To/Cc (12 personal addresses)"
  .. " - use Bcc or a mail-merge tool [MG101 MG102 MG103; score 57]"
ERROR_TEXT = "mailguard could not check this message; please try again later"

function expect_smtp_reply(conn, code, esc, text, what)
  check(mt.eom_check(conn, MT_SMTPREPLY, code, esc, text),
    what .. ": no SMTP reply '" .. code .. " " .. esc .. " " .. text .. "'")
end
