# A tiny PSGI app for Starlet: answers with the generation and pid that served it.
use strict;
use warnings;

sub {
    my $body = sprintf "hello from generation %s pid %d\n",
        $ENV{SERVER_STARTER_GENERATION} // '?', $$;
    return [200, ['Content-Type' => 'text/plain', 'Content-Length' => length $body], [$body]];
};
