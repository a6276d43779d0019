// Ports for test servers on 127.0.0.1, safe under `ctest -j`: several test
// processes pick ports at once, and gRPC servers would share a port with
// SO_REUSEPORT. Ports come from below the kernel's ephemeral range (so no
// bind(0) or outgoing connection takes them) and each is reserved across
// processes by an flock on $TMPDIR/synod_it_ports/<port> for the life of
// the process.
//
// Thread-safe.
#ifndef SYNOD_TESTS_SUPPORT_FREE_PORT_H_
#define SYNOD_TESTS_SUPPORT_FREE_PORT_H_

namespace synod::testing {

// A port free on 127.0.0.1 now and reserved for this process; 0 (and a
// test failure) when none could be found.
int PickFreePort();

}  // namespace synod::testing

#endif  // SYNOD_TESTS_SUPPORT_FREE_PORT_H_
