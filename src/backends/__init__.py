"""Exact enumeration backends (see src/enumeration.py for the contract).

gurobi.py and scip.py solve the lean MILP of src/milp.py in one search tree, cutting off
every new pattern with a lazy no-good cut; each imports its solver package lazily.
"""
