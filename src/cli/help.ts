// `-h`, `--help` and `-v` print ipvsadm 1.31's texts exactly (with this program's name in the
// usage lines); `--lvsadm-help` tells what lvsadm does beyond ipvsadm and how it reaches lvsd.

import { DEFAULT_SOCKET_PATH } from './client.js';

/** ipvsadm's version(): the release it speaks, whatever this program is called. */
export function versionText(): string {
  return 'ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n';
}

export function usageText(program: string): string {
  const p = program;
  return (
    versionText() +
    'Usage:\n' +
    `  ${p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]\n` +
    `  ${p} -D virtual-service\n` +
    `  ${p} -C\n` +
    `  ${p} -R\n` +
    `  ${p} -S [-n]\n` +
    `  ${p} -a|e virtual-service -r server-address [options]\n` +
    `  ${p} -d virtual-service -r server-address\n` +
    `  ${p} -L|l [virtual-service] [options]\n` +
    `  ${p} -Z [virtual-service]\n` +
    `  ${p} --set tcp tcpfin udp\n` +
    `  ${p} --start-daemon {master|backup} [daemon-options]\n` +
    `  ${p} --stop-daemon {master|backup}\n` +
    `  ${p} -h\n\n` +
    'Commands:\n' +
    'Either long or short options are allowed.\n' +
    '  --add-service     -A        add virtual service with options\n' +
    '  --edit-service    -E        edit virtual service with options\n' +
    '  --delete-service  -D        delete virtual service\n' +
    '  --clear           -C        clear the whole table\n' +
    '  --restore         -R        restore rules from stdin\n' +
    '  --save            -S        save rules to stdout\n' +
    '  --add-server      -a        add real server with options\n' +
    '  --edit-server     -e        edit real server with options\n' +
    '  --delete-server   -d        delete real server\n' +
    '  --list            -L|-l     list the table\n' +
    '  --zero            -Z        zero counters in a service or all services\n' +
    '  --set tcp tcpfin udp        set connection timeout values\n' +
    '  --start-daemon              start connection sync daemon\n' +
    '  --stop-daemon               stop connection sync daemon\n' +
    '  --help            -h        display this help message\n\n' +
    'virtual-service:\n' +
    '  --tcp-service|-t  service-address   service-address is host[:port]\n' +
    '  --udp-service|-u  service-address   service-address is host[:port]\n' +
    '  --sctp-service    service-address   service-address is host[:port]\n' +
    '  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n\n' +
    'Options:\n' +
    '  --ipv6         -6                   fwmark entry uses IPv6\n' +
    '  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n' +
    '                                      the default scheduler is wlc.\n' +
    '  --pe            engine              alternate persistence engine may be sip,\n' +
    '                                      not set by default.\n' +
    '  --persistent   -p [timeout]         persistent service\n' +
    '  --netmask      -M netmask           persistent granularity mask\n' +
    '  --real-server  -r server-address    server-address is host (and port)\n' +
    '  --gatewaying   -g                   gatewaying (direct routing) (default)\n' +
    '  --ipip         -i                   ipip encapsulation (tunneling)\n' +
    '  --masquerading -m                   masquerading (NAT)\n' +
    '  --tun-type      type                one of ipip|gue|gre,\n' +
    '                                      the default tunnel type is ipip.\n' +
    '  --tun-port      port                tunnel destination port\n' +
    '  --tun-nocsum                        tunnel encapsulation without checksum\n' +
    '  --tun-csum                          tunnel encapsulation with checksum\n' +
    '  --tun-remcsum                       tunnel encapsulation with remote checksum\n' +
    '  --weight       -w weight            capacity of real server\n' +
    '  --u-threshold  -x uthreshold        upper threshold of connections\n' +
    '  --l-threshold  -y lthreshold        lower threshold of connections\n' +
    '  --connection   -c                   output of current IPVS connections\n' +
    '  --timeout                           output of timeout (tcp tcpfin udp)\n' +
    '  --daemon                            output of daemon information\n' +
    '  --stats                             output of statistics information\n' +
    '  --rate                              output of rate information\n' +
    '  --exact                             expand numbers (display exact values)\n' +
    '  --thresholds                        output of thresholds information\n' +
    '  --persistent-conn                   output of persistent connection info\n' +
    '  --tun-info                          output of tunnel information\n' +
    '  --nosort                            disable sorting output of service/server entries\n' +
    '  --sort                              does nothing, for backwards compatibility\n' +
    '  --ops          -o                   one-packet scheduling\n' +
    '  --numeric      -n                   numeric output of addresses and ports\n' +
    '  --sched-flags  -b flags             scheduler flags (comma-separated)\n\n' +
    'Daemon Options:\n' +
    '  --syncid sid                        syncid for connection sync (default=255)\n' +
    '  --sync-maxlen length                Max sync message length (default=1472)\n' +
    '  --mcast-interface interface         multicast interface for connection sync\n' +
    '  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n' +
    '  --mcast-port port                   UDP port (default=8848)\n' +
    '  --mcast-ttl ttl                     Multicast TTL (default=1)\n'
  );
}

/** What lvsadm adds to ipvsadm: its own options, examples, exit statuses and differences. */
export function lvsadmHelpText(program: string): string {
  const p = program;
  return (
    `${p} (lvsd 0.1.0) speaks ipvsadm 1.31's language; \`${p} -h' prints ipvsadm's usage.\n` +
    `${p} talks to lvsd, the director daemon, instead of the kernel:\n` +
    `  --socket PATH                       lvsd's control socket (default ${DEFAULT_SOCKET_PATH},\n` +
    '                                      or $LVSD_SOCKET)\n' +
    '  --json                              with -L or -S: the table as JSON (addresses as text;\n' +
    '                                      -L includes counters and rates, -S only configuration)\n' +
    'Runtime state of a real server (kept apart from the configuration, never saved):\n' +
    '  --drain -t|-u|-f SERVICE -r SERVER  weight 0: open connections go on, new ones go elsewhere\n' +
    '  --maint -t|-u|-f SERVICE -r SERVER  out of scheduling (and of -L) until --ready\n' +
    '  --ready -t|-u|-f SERVICE -r SERVER  back from --drain or --maint\n' +
    "  --set-weight N ... -r SERVER        the operator's weight, over the configured one and health's\n" +
    '  --clear-weight ... -r SERVER        back to the configured (or misc_dynamic) weight\n' +
    '                                      (each takes --json: the real server as -L --json shows it)\n' +
    'Diagnosis (run on the director):\n' +
    '  doctor [--json]                     a verdict per service and real server, with the evidence\n' +
    '                                      (replies around the director, shared subnet, refused or\n' +
    '                                      silent real servers, forwarding, rp_filter, redirects,\n' +
    '                                      firewall); exit 0 no problem, 1 problems (docs/doctor.md)\n\n' +
    'Examples (LVS-NAT):\n' +
    `  ${p} -A -t 198.18.0.1:80 -s rr                  add a virtual service, round robin\n` +
    `  ${p} -a -t 198.18.0.1:80 -r 198.19.0.11 -m      add a real server, masquerading (NAT)\n` +
    `  ${p} -a -t 198.18.0.1:80 -r 198.19.0.12 -m -w 2 another, with twice the weight\n` +
    `  ${p} -Ln                                        list numerically\n` +
    `  ${p} -Ln --stats                                counters;  --rate: rates per second\n` +
    `  ${p} -Lnc                                       the connection table\n` +
    `  ${p} -S -n > rules; ${p} -R < rules             save and restore\n\n` +
    'Exit status: 0 success; 1 a listing failed (e.g. no such service for -L -t);\n' +
    '2 invalid command line, or lvsd cannot be reached; 255 lvsd refused the change\n' +
    "(the reason is printed, as ipvsadm prints the kernel's), or bad option syntax.\n" +
    "Schedulers besides ipvsadm 1.31's list: twos, and none (new clients get no real server).\n" +
    'Where lvsadm differs from ipvsadm, and why: docs/cli.md, "Known differences".\n'
  );
}
