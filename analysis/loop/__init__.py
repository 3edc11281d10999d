"""`nextbest simulate-loop`: the learning loop lived day by day on a causal world (``run.py``), the arms that
decide in it (``arms.py``) and its page (``document.py``)."""
