"""The versioned dataset store: `store` (versions, refs, atomic commits), `rows` (row ids, content hashes, frames),
`verify` (checksums, diff, gc), `catalog` (read-only views), `names` (what a name may be)."""
