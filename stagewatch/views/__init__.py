"""Table layouts of the CLI's read commands, separate from the commands that fetch the numbers.

A layout takes the documented JSON result (what `--format json` prints) and a width, and returns rich
renderables; it never cuts a number: when a column does not fit, the column goes (and the caption says
which), the numbers of the columns shown are always whole.
"""
