"""Scanning archived mail (``mailguard scan``): mbox, Maildir, .eml trees and IMAP folders.

Sent mail is judged with ``mode="archived"``: a Bcc header in a Sent copy is how mail
clients record Bcc, so it is evidence of doing it right, not a leak. Findings go into an
incident register (:mod:`mailguard.archive.register`) shaped for GDPR Art. 33 records.
"""
