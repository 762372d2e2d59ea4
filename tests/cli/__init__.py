"""The `vramcap` command as users run it: a child process, its output and its exit code."""
