"""A synthetic organisation's Sent mail, for the history evaluation and benchmarks.

The organisation (``acme.example``) has users in teams; each user writes to colleagues
and to a personal set of external contacts (at partner organisations and at consumer
providers), most often to a few of them (Zipf-like). Teams share part of their contacts,
so a contact of *another* team's user is a realistic wrong autocomplete. Threads: a third
of the messages answer an earlier message of the same sender (In-Reply-To/References),
sometimes with one recipient more. Over time users make first contacts (a new address,
usually alone or with colleagues), and about one message in a hundred is a mailout to
60-200 people. Everything follows ``--seed``: same seed, same bytes.

    python benchmarks/gen_org_mail.py --messages 20000 --out sent.mbox
"""

from __future__ import annotations

import argparse
import datetime
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ORG = "acme.example"
FIRST = (
    "anna", "ben", "carla", "dev", "elif", "farah", "george", "hana", "ivan", "jun", "kofi",
    "lena", "marco", "nina", "omar", "petra", "quinn", "rosa", "sam", "tariq", "uma", "vik",
    "wen", "xavi", "yara", "zoe",
)  # fmt: skip
LAST = (
    "smith", "jones", "patel", "garcia", "kim", "muller", "rossi", "dubois", "novak", "silva",
    "okafor", "tanaka", "larsen", "costa", "nowak", "ivanova", "haddad", "moreau", "keller",
    "brown",
)  # fmt: skip
PARTNER_WORDS = (
    "north", "south", "river", "stone", "bright", "cedar", "harbor", "summit", "atlas",
    "meridian", "pioneer", "lumen", "vertex", "orbit", "maple", "quarry", "falcon", "beacon",
    "delta", "prism",
)  # fmt: skip
PARTNER_KINDS = ("law", "consult", "health", "supply", "logistics", "finance", "media")
PROVIDERS = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.co.uk", "gmx.de", "icloud.com")
TLDS = ("example", "test", "example.com", "example.co.uk")


@dataclass
class User:
    address: str
    team: int
    contacts: list[str] = field(default_factory=list)
    colleagues: list[str] = field(default_factory=list)
    threads: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    """(root Message-ID, references, recipients) of recent threads."""


@dataclass
class Message:
    sender: str
    to: list[str]
    cc: list[str]
    message_id: str
    in_reply_to: str | None
    references: list[str]
    day: int
    subject: str
    body: str = "Hello,\n\nplease find the notes below.\n\nBest regards\n"

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc]

    def to_bytes(self, from_line: bool = True) -> bytes:
        date = datetime.date(1970, 1, 1) + datetime.timedelta(self.day)
        lines = []
        if from_line:
            lines.append(f"From {self.sender} {date:%a %b %d} 10:00:00 {date:%Y}")
        lines += [
            f"From: {self.sender}",
            f"To: {', '.join(self.to)}",
            *([f"Cc: {', '.join(self.cc)}"] if self.cc else []),
            f"Subject: {self.subject}",
            f"Date: {date:%a, %d %b %Y} 10:00:00 +0000",
            f"Message-ID: <{self.message_id}>",
        ]
        if self.in_reply_to:
            lines.append(f"In-Reply-To: <{self.in_reply_to}>")
            lines.append("References: " + " ".join(f"<{r}>" for r in self.references))
        return ("\n".join(lines) + "\n\n" + self.body + "\n").encode()


class Organisation:
    def __init__(self, seed: int, users: int = 60, teams: int = 8) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.partners = [
            f"{rng.choice(PARTNER_WORDS)}-{rng.choice(PARTNER_KINDS)}{i}.{rng.choice(TLDS)}"
            for i in range(max(10, users // 2))
        ]
        self.people: set[str] = set()
        self.users: list[User] = []
        for i in range(users):
            self.users.append(User(self._person(ORG, i), i % teams))
        team_pool: dict[int, list[str]] = {
            t: [self._external() for _ in range(40)] for t in range(teams)
        }
        for user in self.users:
            pool = team_pool[user.team]
            shared = rng.sample(pool, rng.randint(8, 20))
            own = [self._external() for _ in range(rng.randint(5, 25))]
            user.contacts = shared + own
            rng.shuffle(user.contacts)
            mates = [u.address for u in self.users if u.team == user.team and u is not user]
            user.colleagues = mates + rng.sample([u.address for u in self.users], 3)
        self.serial = 0
        self.weights = [1 / (i + 1) for i in range(len(self.users))]

    def _person(self, domain: str, n: int | None = None) -> str:
        rng = self.rng
        for attempt in range(1_000_000):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            style = rng.randrange(4)
            local = (f"{first}.{last}", f"{first[0]}{last}", f"{first}{last[:3]}",
                     f"{first}.{last}{rng.randint(1, 99)}")[style]  # fmt: skip
            if attempt >= 3:  # the common forms are taken: a number, as real people do
                local = f"{first}.{last}{len(self.people)}"
            address = f"{local}@{domain}"
            if address not in self.people:
                self.people.add(address)
                return address
        raise RuntimeError("no new address")

    def _external(self) -> str:
        rng = self.rng
        domain = rng.choice(PROVIDERS) if rng.random() < 0.3 else rng.choice(self.partners)
        return self._person(domain)

    def new_external(self) -> str:
        """An address nobody in the organisation has written to."""
        return self._external()

    def messages(self, count: int, start_day: int, days: int) -> Iterator[Message]:
        rng = self.rng
        for n in range(count):
            day = start_day + n * days // count
            user = rng.choices(self.users, self.weights)[0]
            yield self._message(user, day)

    def _pick(self, user: User, k: int) -> list[str]:
        weights = [1 / (i + 1) ** 1.1 for i in range(len(user.contacts))]
        chosen: list[str] = []
        while len(chosen) < k:
            c = rng_choice(self.rng, user.contacts, weights)
            if c not in chosen:
                chosen.append(c)
        return chosen

    def _message(self, user: User, day: int) -> Message:
        rng = self.rng
        self.serial += 1
        mid = f"{self.serial}.{rng.getrandbits(40):x}@{ORG}"
        roll = rng.random()
        if roll < 0.01:  # a mailout
            people = [self.new_external() for _ in range(rng.randint(60, 200))]
            return Message(user.address, [user.address], people, mid, None, [], day, "News")
        if roll < 0.34 and user.threads:  # a reply in one of the sender's threads
            root, refs, rcpts = rng.choice(user.threads[-20:])
            rcpts = list(rcpts)
            if rng.random() < 0.1:
                extra = self._pick(user, 1)[0]
                if extra not in rcpts:
                    rcpts.append(extra)
            refs = [*refs, root][-10:]
            msg = Message(user.address, rcpts[:1], rcpts[1:], mid, refs[-1], refs, day,
                          "Re: notes")  # fmt: skip
            user.threads.append((mid, refs, rcpts))
            return msg
        k = rng.choices((1, 2, 3, 4, 6), (55, 20, 12, 8, 5))[0]
        rcpts = self._pick(user, min(k, len(user.contacts)))
        if rng.random() < 0.25:
            rcpts.append(rng.choice(user.colleagues))
        if rng.random() < 0.02:  # a first contact, usually alone or with colleagues
            new = self.new_external()
            user.contacts.append(new)
            rcpts = [new] if rng.random() < 0.7 else [new, rng.choice(user.colleagues)]
        msg = Message(user.address, rcpts[:1], rcpts[1:], mid, None, [], day, "Notes")
        user.threads.append((mid, [], rcpts))
        if len(user.threads) > 40:
            del user.threads[:20]
        return msg


def rng_choice(rng: random.Random, items: list[str], weights: list[float]) -> str:
    return rng.choices(items, weights)[0]


def write_mbox(path: Path, messages: Iterator[Message]) -> int:
    n = 0
    with path.open("wb") as out:
        for msg in messages:
            out.write(msg.to_bytes())
            out.write(b"\n")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1729)
    ap.add_argument("--users", type=int, default=60)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    org = Organisation(args.seed, args.users)
    start = (datetime.date(2024, 1, 1) - datetime.date(1970, 1, 1)).days
    n = write_mbox(args.out, org.messages(args.messages, start, args.days))
    print(f"wrote {n:,} messages of {len(org.users)} users to {args.out}")


if __name__ == "__main__":
    main()
