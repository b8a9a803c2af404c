#!/usr/bin/perl
# A minimal HTTP server written against the original Perl API: it gets its
# listening socket from Server::Starter::server_ports() and IO::Socket::INET,
# as the original's documentation shows. Answers "gen=G pid=P\n", or the value
# of an environment variable for GET /env/NAME. TERM: finish the request in
# progress, then exit 0.
use strict;
use warnings;

use IO::Socket::INET;
use Server::Starter qw(server_ports);

$SIG{PIPE} = 'IGNORE';

my $ports = server_ports();
my @fds = values %$ports;
die "perl_worker: expected one socket in SERVER_STARTER_PORT, got: $ENV{SERVER_STARTER_PORT}\n"
    unless @fds == 1;
my $listener = IO::Socket::INET->new(Proto => 'tcp');
$listener->fdopen($fds[0], 'w')
    or die "perl_worker: failed to open fd $fds[0]: $!\n";

my $gen = $ENV{SERVER_STARTER_GENERATION};
my ($busy, $stop) = (0, 0);
$SIG{TERM} = sub {
    $stop = 1;
    exit 0 unless $busy;
};

while (1) {
    my $conn = $listener->accept
        or next;
    $busy = 1;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        my $n = $conn->sysread(my $buf, 4096);
        last unless $n;
        $req .= $buf;
    }
    my ($path) = $req =~ m{^GET (\S+)};
    my $body = "gen=$gen pid=$$\n";
    if (defined $path && $path =~ m{^/env/(.+)$}) {
        $body = (defined $ENV{$1} ? $ENV{$1} : '<unset>') . "\n";
    }
    $conn->syswrite(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
        . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n" . $body
    );
    close $conn;
    $busy = 0;
    exit 0 if $stop;
}
