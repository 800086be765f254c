"""Shapes of AWS identifiers, shared by the key layouts, the config and the demo.

[0-9] and \\Z, not \\d and $: \\d matches non-ASCII digits and $ accepts a trailing newline.
"""
from __future__ import annotations

import re

ACCOUNT_RE = re.compile(r"[0-9]{12}\Z")
# Region *shape*, not a fixed list: real regions (us-gov-east-1, ap-southeast-3) and the
# anonymised ones found in published samples (me-northwest-3r, sagov-westsouth-1r) fit it.
REGION_RE = re.compile(r"[a-z]{2,8}(-[a-z]+)+-[0-9]{1,2}[a-z]?\Z")
