"""Install adopts a lock row taken before it only when the holder carries exactly the name slon
gives that connection. An application's unnamed pooled connection on a stale PID is no slon."""

from __future__ import annotations

import time

from conftest import requires_pid_control
from notices import removal

IDENTITIES = "select nl_nodeid, nl_conncnt from slony_nodelock.lock_identity where cluster_schema = '_bed' order by 1, 2"


def wait_registrations_of_node_2(bed, timeout: float = 60) -> list[tuple]:
    """Node 2's slon registers its connections to node 1 (registerNodeConnection) once it is
    back; wait for the rows whose holders are live."""
    node = bed.node(1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = node.query(
            'select l.nl_conncnt, a.application_name from "_bed".sl_nodelock l'
            " join pg_catalog.pg_stat_activity a on a.pid = l.nl_backendpid where l.nl_nodeid = 2")
        if live:
            return live
        time.sleep(0.2)
    raise AssertionError("node 2's slon registered no connection on node 1")


@requires_pid_control
def test_install_never_adopts_a_stale_lock_held_by_an_unnamed_client_backend(bed):
    bed.build_replicating()
    stale = bed.reboot_host_of(1, reuse_pid=lambda pid: bed.put_backend_on(1, pid, application_name=""))
    node = bed.node(1)
    assert node.query("select backend_type, application_name from pg_catalog.pg_stat_activity where pid = %s",
                      (stale,)) == [("client backend", "")]
    registrations = wait_registrations_of_node_2(bed)

    output = bed.install_fix(1)

    # Node 2's live registrations carry the names slon gives them, and are adopted; the stale
    # row is not, whatever holds its PID now.
    assert all(name.startswith("slon.") for _, name in registrations), registrations
    adopted = node.query(IDENTITIES)
    assert (1, 0) not in adopted, output
    assert {(2, conncnt) for conncnt, _ in registrations} <= set(adopted), (adopted, output)

    slon = bed.start_slon(1)
    assert bed.cluster.wait_slon_holds_lock(slon) != stale
    bed.cluster.assert_replicates(1, 2)
    assert removal("_bed", 1, 0, stale, f"pid {stale} is a client backend with no application_name, and slon "
                                        "names every connection it makes") in slon.log
