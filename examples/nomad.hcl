# A Nomad job whose service, registered in Consul, carries two script checks that run
# `healthfile check` inside the task. Consul reads a check's exit status as 0 passing,
# 1 warning, anything else critical: that is the Nagios convention, so both use --nagios
# (OK 0; WARNING 1 for starting or mere warnings; CRITICAL 2 and UNKNOWN 3 are critical).
#
# - ready: every check. Consul leaves the instance out of the service's healthy ones while
#   it is critical (and, for DNS with only_passing, while it warns).
# - alive: the checks a restart cures, event_loop and heartbeat (see worker.py). With
#   check_restart, Nomad restarts the task after 3 critical results in a row; warnings
#   (ignore_warnings) and a lost database do not restart it.
job "myapp" {
  datacenters = ["dc1"]

  group "app" {
    task "app" {
      driver = "docker"

      config {
        image   = "registry.example.com/myapp:1.0.0"
        command = "python"
        args    = ["/app/worker.py"]
      }

      # The task's environment reaches its script checks too.
      env {
        HEALTHFILE_HEALTH_FILE = "/local/health.json"
        HEALTHFILE_DATABASE    = "/app/data/app.db"
        HEALTHFILE_INTERVAL    = "10"
      }

      service {
        name     = "myapp"
        provider = "consul"

        check {
          name     = "ready"
          type     = "script"
          command  = "healthfile"
          args     = ["check", "--nagios"]
          interval = "10s"
          timeout  = "2s"
        }

        check {
          name     = "alive"
          type     = "script"
          command  = "healthfile"
          args     = ["check", "--nagios", "--group", "live"]
          interval = "10s"
          timeout  = "2s"

          check_restart {
            limit           = 3
            grace           = "30s"
            ignore_warnings = true
          }
        }
      }
    }
  }
}
