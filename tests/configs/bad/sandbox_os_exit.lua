-- expect: sandbox_os_exit.lua:2: attempt to call field 'exit' (a nil value)
os.exit(1)
