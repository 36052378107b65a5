"""The HTML report's template and stylesheet: data inside the package (never a CDN).
This file only lets them travel inside the package."""
