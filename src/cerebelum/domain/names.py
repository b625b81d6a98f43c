"""The one rule for what users name: workflows, signals, schedules (1-100 of [A-Za-z0-9_.-])."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
