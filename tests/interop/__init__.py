"""Interoperability with the reference system (Backstage), driven by its own code in Node."""
