// systemd's notification protocol (Type=notify units, sd_notify(3)): READY=1
// once the server listens, STOPPING=1 when it starts draining. Both do
// nothing when the process is not run by systemd (NOTIFY_SOCKET unset) or
// the build has no libsystemd. Call from any thread.
#pragma once

#include <string>

namespace sb::cli {

void notify_ready(const std::string& status);
void notify_stopping();

}  // namespace sb::cli
