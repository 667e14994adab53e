"""Test support shipped with the package: synthetic acquisitions (`synthetic`) and the
Store conformance tests (`stores`)."""
