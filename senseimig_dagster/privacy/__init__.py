"""What keeps PHI out of plaintext: files written only on request, owner-readable and safe to open in a spreadsheet
(``export.py``). Imports nothing of the product: every layer may use it."""
