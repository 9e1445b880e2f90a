# bash completion for runc-ckpt(1).
#
# Install as /usr/share/bash-completion/completions/runc-ckpt, or source it.
# Completes commands, global flags, each command's flags and the values of
# some (directories, files, choices), the IDs of running containers (from
# `runc list -q` under the --root given earlier on the line) and checkpoint
# archive names for --import, --import-previous, --incremental-from, inspect and image build.
#
# The flag lists below are data: checkpoint, restore, inspect and image (build) must match
# plugin/runc_ckpt/options.py, the others runc 1.1.5's own --help.
# tests/unit/test_completion.py checks both and prints the right line when
# one drifts.

_runc_ckpt_commands="checkpoint create delete events exec features help image inspect key kill list pause ps restore resume run spec start state update"
# Commands whose argument is the ID of an existing container.
_runc_ckpt_id_commands="checkpoint delete events exec kill pause ps resume start state update"

_runc_ckpt_opts_global="--config --criu --debug --help -h --log --log-format --root --rootless --systemd-cgroup --version -v"
_runc_ckpt_vals_global="--config --criu --log --log-format --root --rootless"

# BEGIN options.py
_runc_ckpt_opts_checkpoint="--all -a --auto-dedup --compress -c --create-image --decryption-key --empty-ns --encryption-key --export -e --ext-unix-sk --file-locks --handshake --ignore-rootfs --ignore-volumes --image-path --incremental-from --keep -k --latest -l --lazy-pages --leave-running -R --manage-cgroups-mode --page-server --parent-path --pre-checkpoint -P --pre-copy --pre-copy-max-pause --pre-dump --print-stats --shell-job --sign-by-sigstore-private-key --sign-passphrase-file --status-fd --stream-timeout --tcp-established --with-previous --work-path"
_runc_ckpt_vals_checkpoint="--compress -c --create-image --decryption-key --empty-ns --encryption-key --export -e --image-path --incremental-from --manage-cgroups-mode --page-server --parent-path --pre-copy-max-pause --sign-by-sigstore-private-key --sign-passphrase-file --status-fd --stream-timeout --work-path"
_runc_ckpt_opts_restore="--auto-dedup --bundle -b --check --console-socket --decryption-key --detach -d --empty-ns --ext-unix-sk --file-locks --handshake --ignore-rootfs --ignore-volumes --image-path --import -i --import-previous --incremental-dir --keep -k --lazy-pages --lsm-mount-context --lsm-profile --manage-cgroups-mode --name -n --no-new-keyring --no-pivot --no-subreaper --parent-path --pid-file --print-stats --shell-job --signature-policy --skip-preflight --tcp-close --tcp-established --trust-archive-spec --work-path"
_runc_ckpt_vals_restore="--bundle -b --console-socket --decryption-key --empty-ns --image-path --import -i --import-previous --incremental-dir --lsm-mount-context --lsm-profile --manage-cgroups-mode --name -n --parent-path --pid-file --signature-policy --work-path"
_runc_ckpt_opts_inspect="--decryption-key --format -f --log --signature-policy"
_runc_ckpt_vals_inspect="--decryption-key --format -f --signature-policy"
_runc_ckpt_opts_image="--compress -c"
_runc_ckpt_vals_image="--compress -c"
# END options.py

# BEGIN runc 1.1.5
_runc_ckpt_opts_create="--bundle -b --console-socket --pid-file --no-pivot --no-new-keyring --preserve-fds"
_runc_ckpt_vals_create="--bundle -b --console-socket --pid-file --preserve-fds"
_runc_ckpt_opts_delete="--force -f"
_runc_ckpt_vals_delete=""
_runc_ckpt_opts_events="--interval --stats"
_runc_ckpt_vals_events="--interval"
_runc_ckpt_opts_exec="--console-socket --cwd --env -e --tty -t --user -u --additional-gids -g --process -p --detach -d --pid-file --process-label --apparmor --no-new-privs --cap -c --preserve-fds --cgroup --ignore-paused"
_runc_ckpt_vals_exec="--console-socket --cwd --env -e --user -u --additional-gids -g --process -p --pid-file --process-label --apparmor --cap -c --preserve-fds --cgroup"
_runc_ckpt_opts_features=""
_runc_ckpt_vals_features=""
_runc_ckpt_opts_kill="--all -a"
_runc_ckpt_vals_kill=""
_runc_ckpt_opts_list="--format -f --quiet -q"
_runc_ckpt_vals_list="--format -f"
_runc_ckpt_opts_pause=""
_runc_ckpt_vals_pause=""
_runc_ckpt_opts_ps="--format -f"
_runc_ckpt_vals_ps="--format -f"
_runc_ckpt_opts_resume=""
_runc_ckpt_vals_resume=""
_runc_ckpt_opts_run="--bundle -b --console-socket --detach -d --keep --pid-file --no-subreaper --no-pivot --no-new-keyring --preserve-fds"
_runc_ckpt_vals_run="--bundle -b --console-socket --pid-file --preserve-fds"
_runc_ckpt_opts_spec="--bundle -b --rootless"
_runc_ckpt_vals_spec="--bundle -b"
_runc_ckpt_opts_start=""
_runc_ckpt_vals_start=""
_runc_ckpt_opts_state=""
_runc_ckpt_vals_state=""
_runc_ckpt_opts_update="--resources -r --blkio-weight --cpu-period --cpu-quota --cpu-share --cpu-rt-period --cpu-rt-runtime --cpuset-cpus --cpuset-mems --memory --memory-reservation --memory-swap --pids-limit --l3-cache-schema --mem-bw-schema"
_runc_ckpt_vals_update="--resources -r --blkio-weight --cpu-period --cpu-quota --cpu-share --cpu-rt-period --cpu-rt-runtime --cpuset-cpus --cpuset-mems --memory --memory-reservation --memory-swap --pids-limit --l3-cache-schema --mem-bw-schema"
# END runc 1.1.5

# _runc_ckpt_in WORD LIST...: whether WORD is one of LIST.
_runc_ckpt_in() {
    local word=$1 x
    shift
    for x in $*; do
        [[ $x == "$word" ]] && return 0
    done
    return 1
}

# _runc_ckpt_flag WORD: the canonical spelling of a flag word as runc reads it
# (-root, --root and --root=X are all --root; -h and --h are -h).
_runc_ckpt_flag() {
    local name=${1#-}
    name=${name#-}
    name=${name%%=*}
    if ((${#name} == 1)); then
        printf -- '-%s' "$name"
    else
        printf -- '--%s' "$name"
    fi
}

# _runc_ckpt_files CUR [archives]: file names, or archive-looking ones.
_runc_ckpt_files() {
    local cur=$1 f
    local -a all=() archives=()
    compopt -o filenames 2>/dev/null
    local IFS=$'\n'
    all=($(compgen -f -- "$cur"))
    if [[ $2 != archives ]]; then
        COMPREPLY=("${all[@]}")
        return
    fi
    for f in "${all[@]}"; do
        case $f in
            *.tar|*.tar.gz|*.tgz|*.tar.zst|*.tar.zstd|*.tzst) archives+=("$f") ;;
            *) [[ -d $f ]] && archives+=("$f") ;;
        esac
    done
    # Archives can be named anything; offer every file when none looks like one.
    if ((${#archives[@]})); then
        COMPREPLY=("${archives[@]}")
    else
        COMPREPLY=("${all[@]}")
    fi
}

# _runc_ckpt_value COMMAND FLAG CUR ROOT: complete the value of FLAG.
_runc_ckpt_value() {
    local cmd=$1 flag=$2 cur=$3 root=$4
    case "$cmd $flag" in
        *" --root"|*" --image-path"|*" --work-path"|*" --bundle"|*" -b"|*" --parent-path"|"restore --incremental-dir"|"exec --cwd")
            compopt -o filenames 2>/dev/null
            local IFS=$'\n'
            COMPREPLY=($(compgen -d -- "$cur")) ;;
        " --log-format"|"inspect --format"|"inspect -f")
            COMPREPLY=($(compgen -W "text json" -- "$cur")) ;;
        "list --format"|"list -f"|"ps --format"|"ps -f")
            COMPREPLY=($(compgen -W "table json" -- "$cur")) ;;
        " --rootless")
            COMPREPLY=($(compgen -W "true false auto" -- "$cur")) ;;
        "checkpoint --compress"|"checkpoint -c"|"image --compress"|"image -c")
            COMPREPLY=($(compgen -W "zstd gzip none" -- "$cur")) ;;
        *" --manage-cgroups-mode")
            COMPREPLY=($(compgen -W "soft full strict" -- "$cur")) ;;
        *" --empty-ns")
            COMPREPLY=($(compgen -W "network" -- "$cur")) ;;
        "restore --import"|"restore -i"|"restore --import-previous"|"checkpoint --incremental-from")
            _runc_ckpt_files "$cur" archives ;;
        " --config"|" --criu"|" --log"|"checkpoint --export"|"checkpoint -e"|*" --pid-file"|*" --console-socket"|\
        "checkpoint --encryption-key"|*" --decryption-key"|\
        "exec --process"|"exec -p"|"update --resources"|"update -r")
            _runc_ckpt_files "$cur" ;;
        *)
            COMPREPLY=() ;;
    esac
}

_runc_ckpt() {
    COMPREPLY=()
    # Rejoin "--flag" "=" "value", which bash splits at '=' (COMP_WORDBREAKS).
    local -a words=()
    local j joining=0 w
    for ((j = 0; j <= COMP_CWORD; j++)); do
        w=${COMP_WORDS[j]}
        if [[ $w == "=" && ${#words[@]} -gt 1 && ${words[-1]} == -* && ${words[-1]} != *=* ]]; then
            words[-1]+="="
            joining=1
        elif ((joining)); then
            words[-1]+=$w
            joining=0
        else
            words+=("$w")
        fi
    done
    local cword=$((${#words[@]} - 1))
    local cur=${words[cword]}

    # Find the command, and the --root before it.
    local cmd="" root=/run/runc flag i=1
    while ((i < cword)); do
        w=${words[i]}
        if [[ -n $cmd ]]; then
            break
        elif [[ $w == -* ]]; then
            flag=$(_runc_ckpt_flag "$w")
            if [[ $w == *=* ]]; then
                [[ $flag == --root ]] && root=${w#*=}
            elif _runc_ckpt_in "$flag" "$_runc_ckpt_vals_global"; then
                ((i++))
                [[ $flag == --root ]] && root=${words[i]}
            fi
        else
            cmd=$w
        fi
        ((i++))
    done

    local context=${cmd:-global}
    local opts_var=_runc_ckpt_opts_$context vals_var=_runc_ckpt_vals_$context
    if [[ -n $cmd ]] && ! _runc_ckpt_in "$cmd" "$_runc_ckpt_commands"; then
        return 0
    fi
    local prev=""
    ((cword > 1)) && prev=${words[cword - 1]}

    if [[ $cur == -*=* ]]; then
        # --flag=value in one word: complete the value; bash wants the
        # "--flag=" part back only if it did not split the word itself.
        _runc_ckpt_value "$cmd" "$(_runc_ckpt_flag "$cur")" "${cur#*=}" "$root"
        if [[ ${COMP_WORDS[COMP_CWORD]} == -*=* ]]; then
            local k
            for k in "${!COMPREPLY[@]}"; do
                COMPREPLY[k]=${cur%%=*}=${COMPREPLY[k]}
            done
        fi
    elif [[ -n $prev && $prev == -* && $prev != *=* ]] &&
        _runc_ckpt_in "$(_runc_ckpt_flag "$prev")" "${!vals_var}"; then
        _runc_ckpt_value "$cmd" "$(_runc_ckpt_flag "$prev")" "$cur" "$root"
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${!opts_var}" -- "$cur"))
    elif [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$_runc_ckpt_commands" -- "$cur"))
    elif [[ $cmd == inspect ]]; then
        _runc_ckpt_files "$cur" archives
    elif [[ $cmd == image ]]; then
        if ((cword == i)); then
            COMPREPLY=($(compgen -W "build" -- "$cur"))
        else
            _runc_ckpt_files "$cur" archives
        fi
    elif [[ $cmd == help ]]; then
        COMPREPLY=($(compgen -W "$_runc_ckpt_commands" -- "$cur"))
    elif _runc_ckpt_in "$cmd" "$_runc_ckpt_id_commands"; then
        local ids
        ids=$(command runc --root "$root" list -q 2>/dev/null)
        COMPREPLY=($(compgen -W "$ids" -- "$cur"))
    fi
    return 0
}

complete -F _runc_ckpt runc-ckpt
