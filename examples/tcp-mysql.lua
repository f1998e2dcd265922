-- tcp-mysql: a TCP-mode proxy in front of a MariaDB/MySQL server. crescent does not
-- look at the bytes: each client connection is tunnelled to the server, and one
-- tcplog line is written when it ends.
--
--   MARIADB_ADDR=127.0.0.1:3306 crescent -f examples/tcp-mysql.lua
--   mariadb -h 127.0.0.1 -P 3307 --protocol=TCP -u USER -p
--
-- Environment (defaults in brackets): CRESCENT_ADDR [127.0.0.1:3307], MARIADB_ADDR
-- [127.0.0.1:3306].

defaults {
  mode = "tcp",
  -- A database session may stay idle for long: the tunnel timeout (inactivity in both
  -- directions) is what closes it.
  timeout = { connect = "5s", client = "1h", server = "1h", tunnel = "1h" },
  retries = 3,
}

frontend "mysql" {
  bind { "${CRESCENT_ADDR:-127.0.0.1:3307}" },
  default_backend = "db",
}

backend "db" {
  server "db1" { "${MARIADB_ADDR:-127.0.0.1:3306}" },
}
