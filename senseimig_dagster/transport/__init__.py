"""What the three service clients (Sensei, Dataverse, Microsoft Graph) share: Microsoft Entra ID tokens
(:mod:`.entra`) and one retry policy (:mod:`.retry`). Imports nothing else of the project."""
