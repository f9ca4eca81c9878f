"""Country names to ISO 3166-1 alpha-2 codes, from two maintained data packages rather than a table of our own.

- pycountry (the Debian iso-codes data): each country's ISO name, official name and common name
  ("United States of America", "Russian Federation", "Korea, Republic of").
- Babel (the Unicode CLDR): the name of every territory in every language ("Russia", "Turkey", "UK",
  "Ivory Coast", "Deutschland", "Kosovo").

Names are compared case- and apostrophe-insensitively; a name typed without its accents ("Cote d'Ivoire",
"Turkiye") finds the accented one, but an accented name must match as written ("ÄÖ" is not Vietnamese "Áo",
Austria). A name that CLDR gives to two territories in some language ("Kongo") resolves to neither. The index
(about 40,000 names, a few MB) is built on the first lookup in a process, in about half a second; the API builds
it as it starts.
"""

from __future__ import annotations

import pickle
import unicodedata
from functools import cache

import pycountry
from babel import localedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})


def _key(name: str) -> str:
    """`name` folded for comparison: case, apostrophe styles and runs of spaces do not matter."""
    return " ".join(unicodedata.normalize("NFC", name.translate(_APOSTROPHES)).casefold().split())


def _plain(key: str) -> str:
    """`key` without its accents."""
    return "".join(c for c in unicodedata.normalize("NFKD", key) if not unicodedata.combining(c))


def _unique(codes: dict[str, set[str]]) -> dict[str, str]:
    return {name: next(iter(found)) for name, found in codes.items() if len(found) == 1}


@cache
def _index() -> tuple[dict[str, str], dict[str, str], frozenset[str]]:
    """Names as written and names without accents, each to the one code they name; and every code."""
    exact: dict[str, set[str]] = {}
    plain: dict[str, set[str]] = {}

    def add(name: str | None, code: str) -> None:
        if name:
            key = _key(name)
            exact.setdefault(key, set()).add(code)
            plain.setdefault(_plain(key), set()).add(code)

    for country in pycountry.countries:
        for attribute in ("name", "official_name", "common_name"):
            add(getattr(country, attribute, None), country.alpha_2)
    for identifier in localedata.locale_identifiers():
        if "_" in identifier:  # regional variants repeat their language's names
            continue
        for code, name in _territories(identifier).items():
            if len(code) == 2 and code.isalpha():  # not the numeric regions ("150" Europe)
                add(name, code)
    return _unique(exact), _unique(plain), frozenset(code for found in exact.values() for code in found)


def _territories(identifier: str) -> dict[str, str]:
    """One language's territory names, read from Babel's data file without Babel's cache: `Locale.parse` keeps
    every locale it loaded (about 170 MB for them all), this keeps nothing."""
    with open(localedata.resolve_locale_filename(identifier), "rb") as file:
        data = pickle.load(file)  # noqa: S301 - Babel's own data files, installed with it
    territories: dict[str, str] = data.get("territories", {})
    return territories


def warm() -> None:
    """Builds the index now, so that no request pays for it."""
    _index()


def country_code(country: str) -> str | None:
    """The ISO 3166-1 alpha-2 code (upper case) of `country`: a code as sent ("de"; two letters that are no
    country's code but a country's name, "UK", resolve as the name), or the country called so in any language;
    None when no country, or more than one, has that name."""
    exact, plain, codes = _index()
    as_code = len(country) == 2 and country.isascii() and country.isalpha()
    if as_code and country.upper() in codes:
        return country.upper()
    key = _key(country)
    found = exact.get(key) or (plain.get(key) if _plain(key) == key else None)
    return found or (country.upper() if as_code else None)
