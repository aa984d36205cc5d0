"""``mailguard proxy``: a pre-send SMTP gateway for scripts, CRM exports and mail merges.

Such senders talk straight to their provider's submission server, where no milter runs.
Pointed at this gateway instead, each message is checked with the real envelope by the
same engine and settings as ``mailguard check`` and the milter, and then relayed, refused,
rewritten to Bcc, or split into one copy per recipient.

Built on aiosmtpd's protocol engine with **our own handler**
(:mod:`mailguard.proxy.handler`), not aiosmtpd's bundled ``Proxy`` handler: that one calls
the blocking ``smtplib`` inside the event loop (one slow upstream stalls every client),
ignores the recipients the upstream refuses and always answers ``250``, telling a script
its mail went out when it did not. Here RCPT is passed upstream and its answer returned,
and the upstream is driven by ``smtplib`` on worker threads (:mod:`mailguard.proxy.relay`
says why threads rather than an asyncio client), never on the event loop.

Modules: ``handler`` (SMTP commands), ``actions`` (verdict to what is relayed, the split),
``relay`` (upstream connections), ``journal`` (the split retry journal), ``edit`` (header
edits on bytes), ``auth`` (client logins), ``server`` (the daemon), ``settings``
(``[proxy]``).
"""
