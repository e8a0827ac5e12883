"""Example layers, rules and models bundled with jacverify (used by ``jacverify example``)."""
