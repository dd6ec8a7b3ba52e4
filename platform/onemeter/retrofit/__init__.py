"""The retrofit project (改造项目): one per community × utility, moved through the procedure.

`procedure` declares the procedure of the plan's section 五 as data (states, transitions,
who may fire each, what each needs); it has no database dependency.
"""
