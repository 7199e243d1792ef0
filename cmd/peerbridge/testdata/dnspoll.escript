%% A DNS client that behaves as libcluster 3.5's DNSPoll strategy does
%% (lib/strategy/dns_poll.ex): every poll resolves the query with
%% inet_res:lookup/4, which returns [] on any error (NXDOMAIN, SERVFAIL,
%% an empty answer, a timeout, a refused query), and every node missing
%% from the answer is disconnected. It prints CONNECT and DISCONNECT as
%% DNSPoll would act, and POLL after each lookup. Lines on stdin:
%% "pause" and "resume" stop and restart polling.
%%
%%   escript dnspoll.escript NAME PORT
main([Name, PortText]) ->
    Port = list_to_integer(PortText),
    Self = self(),
    spawn(fun() -> commands(Self) end),
    poll(Name, Port, sets:new(), running).

commands(Loop) ->
    case io:get_line("") of
        eof -> Loop ! stop;
        Line -> Loop ! {command, string:trim(Line)}, commands(Loop)
    end.

poll(Name, Port, Nodes, State) ->
    receive
        stop -> halt(0);
        {command, "pause"} -> io:format("PAUSED~n"), poll(Name, Port, Nodes, paused);
        {command, "resume"} -> io:format("RESUMED~n"), poll(Name, Port, Nodes, running)
    after 50 ->
        case State of
            paused -> poll(Name, Port, Nodes, paused);
            running ->
                Ips = inet_res:lookup(Name, in, a, [{nameservers, [{{127, 0, 0, 1}, Port}]}, {timeout, 1000}]),
                New = sets:from_list([inet:ntoa(Ip) || Ip <- Ips]),
                report("DISCONNECT", sets:subtract(Nodes, New)),
                report("CONNECT", sets:subtract(New, Nodes)),
                io:format("POLL ~b~n", [sets:size(New)]),
                poll(Name, Port, New, running)
        end
    end.

report(What, Nodes) ->
    case lists:sort(sets:to_list(Nodes)) of
        [] -> ok;
        List -> io:format("~s ~s~n", [What, lists:join(",", List)])
    end.
