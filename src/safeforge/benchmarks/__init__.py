"""Benchmarks read natively: one adapter module per published format (see base.py), and one
generic reader for lists of records (records.py, adapter `json_records`) that needs only a conf.

The adapter modules are imported here, by name: importing one registers its adapter in
base.ADAPTERS, and any import of this package's modules runs this first, so the registry is full
before anyone asks it. A new format's module goes in this list.
"""

from safeforge.benchmarks import figstep, mmsafeaware, mmsafetybench, mssbench, records, vlguard

ADAPTER_MODULES = (figstep, mmsafeaware, mmsafetybench, mssbench, records, vlguard)
