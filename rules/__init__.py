"""The rule packs shipped with icsguard: YAML data, one file per protocol plus generic ones.
This file only lets them travel inside the package."""
