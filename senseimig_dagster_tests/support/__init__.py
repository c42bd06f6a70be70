"""What the tests share, in one place (test modules import from here and from the product, never from each other or
from a conftest):

* ``constants``: the emulator seed's users and team, the SharePoint site, the client tests' app registrations;
* ``environments``: the stand-ins - the Dataverse emulator in process, the HTTPS sandbox (Entra ID, Dataverse,
  Sensei, Graph) the asset tests run against, the Entra stand-in on a fake clock, the Graph stand-in with faults;
* ``resources``: the Dagster resources (the product's resource keys) pointed at a test's files and stand-ins;
* ``wire``: WSGI wrappers measuring and disturbing what crosses the wire;
* ``web_api``: the Dataverse Web API spoken by hand (errors, ``$batch``);
* ``dataverse_state``: what the emulator holds, in the forms tests compare;
* ``tenants``: generated tenants read back, and hand-built tenants for the simulator, client and export tests;
* ``maps``: field map files (the default map edited, confirmed copies);
* ``audited_migration``: a small hand-written migration audited like the writers (audit and rollback tests);
* ``loaded_tenant``: a tenant staged and loaded into the emulator (verification tests);
* ``bad_inputs``: the corpus of bad inputs staging must name;
* ``standard_copy``: builds the product's copy of Microsoft's standard-table metadata;
* ``crash_load``: the loader process the crash-safety test kills.
"""
