"""The `earmark` command: the one launcher of every part of Earmark.

It is the only package allowed to import all the others (`hardware`, `firmware`,
`pipeline`, `review_opt_out`, `contract`), so no part copies another's constants to
start it, and nothing imports it. On a speaker, whose wheel holds only the device's
packages, its cloud commands say so instead of failing on an import.
"""
