"""The neighbouring relation every guarantee of this library is stated for.

Two datasets are neighbours when one is the other with one row added or removed. A run
is (epsilon, delta)-DP under that relation because each row's place (training or held
out) is a keyed coin on that row alone, so adding or removing a row moves no other row.
"""

NEIGHBOURING_RELATION = "add_remove_one"
