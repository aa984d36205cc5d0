"""A throwaway custom rule in a temporary directory: the proof that a rule is one file plus
one function, loaded through ``rule_paths`` with no change to anything in ``mailguard/``."""

from __future__ import annotations

import secrets
from pathlib import Path

CODE = "MG901"
NAME = "payslip-in-body"
WORD = "payslip"
WEIGHT = 75
SENDER = "mentions a payslip - send pay documents through the HR portal instead"

RULE = """\
code = "{code}"
name = "{name}"
summary = "The body mentions a payslip: pay data does not belong in email."
severity = "high"
weight = {weight}
check = "{module}:mentions"
tags = ["content", "custom"]
reads = ["headers", "body"]
{needs}
[scoring]
count = "mentions"
min = "min_mentions"

[options.word]
type = "str"
default = "{word}"
doc = "The word to look for."

[options.min_mentions]
type = "int"
default = 1
min = 1
doc = "Mentions needed before the rule fires."

[doc]
sender = "{sender}"
what = "Counts mentions of `word` in the body."
why = "Pay data in email is a leak waiting to happen."
example = "Subject: your payslip"
fix = "Use the HR portal."

[[examples]]
name = "a payslip in the body"
triggers = true
message = "From: hr@acme.example\\nTo: a@one.example\\n\\nYour {word} is attached.\\n"

[[examples]]
name = "nothing about pay"
triggers = false
message = "From: hr@acme.example\\nTo: a@one.example\\n\\nHello.\\n"
"""

CHECKS = '''\
"""Checks of a custom rule: facts only, the engine scores them."""

from mailguard.checks.base import Hit


def mentions(ctx, settings):
    word = settings.options["word"]
    n = ctx.message.body_text.text.lower().count(word)
    if n:
        yield Hit(f"the body mentions '{word}' {n} times", evidence={"mentions": n})


def resolved(ctx, settings):
    """Needs the ``dns`` service: asks it about the sender's domain."""
    sender = ctx.recipients.sender
    domain = sender.addr.rsplit("@", 1)[-1] if sender is not None else ""
    answer = ctx.services.dns.lookup(domain)
    yield Hit(f"the resolver says {answer}", evidence={"answer": answer})
'''


def write_rule(directory: Path, *, code: str = CODE, name: str = NAME, needs: str = "") -> Path:
    """Write the rule file and its check module into ``directory`` (created); return it.

    The module gets a fresh name each time: a module name is global to the process.
    """
    directory.mkdir(parents=True, exist_ok=True)
    module = f"custom_checks_{secrets.token_hex(4)}"
    (directory / f"{module}.py").write_text(CHECKS, encoding="utf-8")
    text = RULE.format(
        code=code, name=name, weight=WEIGHT, module=module, word=WORD, sender=SENDER,
        needs=f"needs = [{needs!r}]\n".replace("'", '"') if needs else "",
    )  # fmt: skip
    if needs:
        text = text.replace(f"{module}:mentions", f"{module}:resolved")
        text = text.replace('[scoring]\ncount = "mentions"\nmin = "min_mentions"\n', "")
    (directory / f"{code}.toml").write_text(text, encoding="utf-8")
    return directory


def write_config(root: Path, rule_dir: str = "rules") -> Path:
    """A ``mailguard.toml`` in ``root`` whose ``rule_paths`` names ``rule_dir`` (relative)."""
    config = root / "mailguard.toml"
    config.write_text(f'rule_paths = ["{rule_dir}"]\n', encoding="utf-8")
    return config


def payslip_message(recipients: str = "a@one.example") -> bytes:
    return (
        "From: HR <hr@acme.example>\r\n"
        f"To: {recipients}\r\n"
        "Subject: March\r\n"
        "\r\n"
        f"Dear colleague, your {WORD.upper()} for March is ready.\r\n"
    ).encode()


STALL_WORD = "stall-the-gate"
STALL_CHECK = '''\
"""A custom check that stalls without ever giving the engine a chance to stop it."""

import time
import uuid
from pathlib import Path

MARKS = Path({marks!r})


def stalls(ctx, settings):
    if {word!r} in ctx.message.body_text.text:
        call = uuid.uuid4().hex
        (MARKS / f"began-{{call}}").touch()
        time.sleep({seconds!r})  # no checkpoint: operator code owes us none
        (MARKS / f"ended-{{call}}").touch()
    return iter(())
'''


def write_stalling_rule(directory: Path, seconds: float) -> Path:
    """A rule (MG950) whose check sleeps ``seconds`` in one call when the body has
    :data:`STALL_WORD`, touching a ``began-*`` and an ``ended-*`` file in ``directory``
    around it (:func:`stalled_calls` counts them): the shape of a custom check stuck in a
    slow regex or a blocking lookup."""
    directory.mkdir(parents=True, exist_ok=True)
    module = f"stall_checks_{secrets.token_hex(4)}"
    check = STALL_CHECK.format(marks=str(directory), word=STALL_WORD, seconds=seconds)
    (directory / f"{module}.py").write_text(check, encoding="utf-8")
    rule = RULE.format(
        code="MG950", name="stalls", weight=1, module=module, word=WORD, sender=SENDER, needs=""
    ).replace(f"{module}:mentions", f"{module}:stalls")
    (directory / "MG950.toml").write_text(rule, encoding="utf-8")
    return directory


def stalled_calls(directory: Path, stage: str) -> int:
    """How many calls of the stalling check have ``began`` or ``ended`` so far."""
    return len(list(directory.glob(f"{stage}-*")))
