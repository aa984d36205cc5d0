"""The sensitive-context vocabulary: precise enough for business mail, sharp for real cases."""

from __future__ import annotations

import pytest

from mailguard import sensitive


def categories(text: str) -> set[str]:
    return {m.category.key for m in sensitive.detect({"subject": text}, sensitive.vocabulary())}


@pytest.mark.parametrize(
    "text",
    [
        "Sports club fixtures for Saturday",
        "Q3 supplier price update",
        "Server maintenance window tonight",
        "Please be patient while we migrate",
        "Health and safety training reminder",
        "Visual aids for the sales deck",
        "Probation period review for new starters",
        "Tennis court booking",
        "Meal prep ideas for the team lunch",
        "Technical debt in the billing service",
    ],
)
def test_ordinary_business_mail_is_not_sensitive(text):
    assert categories(text) == set()


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("Patient council meeting minutes", "health"),
        ("HIV advisory board: next meeting", "hiv"),
        ("Gender Identity Clinic newsletter", "gender_identity"),
        ("Your probation appointment", "criminal_justice"),
        ("Debt advice drop-in", "debt_financial_hardship"),
        ("AA meeting moved to Thursday", "addiction"),
        ("Asylum support group", "immigration_asylum"),
        ("Mental health peer support circle", "mental_health"),
    ],
)
def test_sensitive_groups_are_recognised(text, category):
    assert category in categories(text)


def test_whitespace_inside_phrases_and_case_do_not_matter():
    assert "gender_identity" in categories("GENDER\n   identity clinic")


def test_extra_terms_form_a_custom_category():
    vocab = sensitive.vocabulary(("project nightingale", "ward*"))

    def custom(text: str) -> list[str]:
        found = sensitive.detect({"body": text}, vocab)
        return [m.term for m in found if m.category.key == "custom"]

    assert custom("Rota for Project  Nightingale") == ["project nightingale"]
    assert custom("Wards 7B and 8 are closed") == ["wards"]
    assert custom("Awards evening") == []
    assert custom("Project nightingales") == []


def test_vocabulary_is_well_formed():
    cats = sensitive.vocabulary().categories
    assert len(cats) >= 15
    assert all(c.label and c.gdpr for c in cats)
