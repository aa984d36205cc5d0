"""Milter integration: ``mailguard milter`` for Postfix and Sendmail."""
