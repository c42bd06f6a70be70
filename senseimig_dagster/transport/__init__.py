"""What the three service clients (Sensei, Dataverse, Microsoft Graph) share: Microsoft Entra ID tokens
(:mod:`.entra`), one retry policy (:mod:`.retry`) and the https rule for endpoints (:mod:`.urls`). Imports nothing else of the project."""
