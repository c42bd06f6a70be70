"""Ids and names the tests share: the emulator's seed (its users and team), the SharePoint site, the in-process
emulator's address, and the app registrations the client tests give their Entra stand-ins."""

from __future__ import annotations

# -- the emulator's seed (sandbox/dataverse_emulator/seed.json) ------------------------------------------------------
SEED_ADMIN = "5eed0000-0000-4000-8000-000000000101"  # enabled, interactive: avery.admin@sandbox.example
SEED_HYGIENIST = "5eed0000-0000-4000-8000-000000000102"  # enabled, interactive: harper.hygienist@sandbox.example
SEED_DEPARTED = "5eed0000-0000-4000-8000-000000000103"  # disabled: dana.departed@sandbox.example
SEED_INTEGRATION = "5eed0000-0000-4000-8000-000000000104"  # non-interactive (access mode 4)
SEED_APP_USER = "5eed0000-0000-4000-8000-000000000105"  # the application user the sandbox client acts as
SEED_TEAM = "5eed0000-0000-4000-8000-000000000201"  # the Front Desk team: the tests' fallback owner
SEED_TEAM_NAME = "Front Desk"
# The SharePoint site the seed's document management names (its sharepointsite; ``demo.SANDBOX_SITE_URL``), which
# the Graph stand-in serves.
SITE_URL = "https://contoso.sharepoint.com/sites/dental"

# -- the emulator in process (httpx.WSGITransport) -------------------------------------------------------------------
EMULATOR_URL = "http://dv.test"
EMULATOR_BASE = f"{EMULATOR_URL}/api/data/v9.2"

# -- app registrations of the client tests' own Entra stand-ins ------------------------------------------------------
TEST_TENANT = "11111111-2222-4333-8444-555555555555"
DATAVERSE_CLIENT_ID, DATAVERSE_SECRET = "sandbox-client", "s3cr3t-Value~never-shown"
GRAPH_CLIENT_ID, GRAPH_SECRET = "graph-client", "graph-s3cret~never-shown"
ENV_URL = "https://org.crm.dynamics.com"  # a Dataverse environment URL as tokens name it (nothing is served there)

# -- the wire ---------------------------------------------------------------------------------------------------------
SOURCE_KEY = "smig_sourcesystemid"  # the alternate key every migrated record carries
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
REVIEWER = "Test Reviewer"  # who confirms the tests' maps
