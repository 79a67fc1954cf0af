"""The fake Atlassian Cloud behind tests/fake/atlassian-fake (see README.md)."""
