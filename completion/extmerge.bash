# bash completion for extmerge (also as systemd-sysext / systemd-confext) and
# extmerge-initrd.                                                  -*- shell-script -*-
# Installed to $PREFIX/share/bash-completion/completions/extmerge (and
# .../extmerge-initrd), where bash-completion loads it on first use; it works without
# bash-completion too (`source` it). Uses bash-completion's _filedir when present.

# Sets words/cword/cur from COMP_WORDS/COMP_CWORD, joining "--opt" "=" "value"
# (bash splits at the '=' of COMP_WORDBREAKS) back into one word.
__extmerge_words() {
    local i w j=-1 glue=0
    words=()
    cword=0
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        w=${COMP_WORDS[i]}
        if ((glue)); then
            words[j]+=$w
            glue=0
        elif [[ $w == =* && $j -ge 0 && ${words[j]} == -* && ${words[j]} != *=* ]]; then
            words[j]+=$w
            [[ $w == = ]] && glue=1
        else
            words[++j]=$w
        fi
        # Nothing after the cursor's word counts.
        ((i == COMP_CWORD)) && cword=$j && break
    done
    cur=${words[cword]-}
}

# Completes directories (--root=, --sysroot=) or files (--cmdline=) for "$cur".
__extmerge_paths() {   # -d for directories
    if declare -F _filedir >/dev/null; then
        _filedir "$@"
    else
        compopt -o filenames 2>/dev/null
        if [[ ${1-} == -d ]]; then
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
    fi
}

# Offers the words of $1 that start with "$cur"; words ending in '=' get no space.
__extmerge_offer() {
    mapfile -t COMPREPLY < <(compgen -W "$1" -- "$cur")
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}

_extmerge() {
    local words cword cur prog opt i verb=
    COMPREPLY=()
    __extmerge_words
    prog=${words[0]##*/}

    local verbs="status merge unmerge refresh list plan help"
    local opts="--root= --json= --force --no-reload --noexec= --mutable=
        --always-refresh --always-refresh= --image-policy= --pid= --unit= --search= --export= --main-pid= --dry-run --no-legend
        --no-pager -h --help --version"
    # Invoked as systemd-sysext or systemd-confext, the class is fixed: no --class.
    case $prog in
        systemd-sysext | systemd-confext) ;;
        *) opts+=" --class=" ;;
    esac
    local takes_arg="--root --class --json --noexec --mutable --image-policy --pid --unit --search --export --main-pid"

    # The option whose value is being completed: "--opt=VALUE" or "--opt VALUE".
    opt=
    if [[ $cur == --*=* ]]; then
        opt=${cur%%=*}
        cur=${cur#*=}
    elif ((cword > 1)) && [[ " $takes_arg " == *" ${words[cword - 1]} "* ]]; then
        opt=${words[cword - 1]}
    fi
    case $opt in
        --mutable) __extmerge_offer "no yes auto import ephemeral ephemeral-import"; return 0 ;;
        --class) [[ $opts == *--class=* ]] && __extmerge_offer "sysext confext both"; return 0 ;;
        --json) __extmerge_offer "pretty short off"; return 0 ;;
        --noexec | --always-refresh) __extmerge_offer "yes no"; return 0 ;;
        --root | --search | --export) __extmerge_paths -d; return 0 ;;
        --image-policy) return 0 ;;
        ?*) return 0 ;;
    esac

    # A verb given already? Then only options.
    for ((i = 1; i < cword; i++)); do
        if [[ " $takes_arg " == *" ${words[i]} "* ]]; then
            ((i++))
            continue
        fi
        if [[ ${words[i]} != -* && " $verbs " == *" ${words[i]} "* ]]; then
            verb=${words[i]}
            break
        fi
    done
    if [[ $cur == -* || -n $verb ]]; then
        __extmerge_offer "$opts"
    else
        __extmerge_offer "$verbs"
    fi
    return 0
}

_extmerge_initrd() {
    local words cword cur i verb=
    COMPREPLY=()
    __extmerge_words
    case $cur in
        --sysroot=*) cur=${cur#*=}; __extmerge_paths -d; return 0 ;;
        --cmdline=*) cur=${cur#*=}; __extmerge_paths; return 0 ;;
        --extra-root=*) cur=${cur#*=}; __extmerge_paths -d; return 0 ;;
    esac
    for ((i = 1; i < cword; i++)); do
        [[ ${words[i]} != -* ]] && verb=${words[i]}
    done
    if [[ $cur == -* || -n $verb ]]; then
        __extmerge_offer "--sysroot= --cmdline= --extra-root= -h --help"
    else
        __extmerge_offer "sysroot initrd initrd-unmerge"
    fi
    return 0
}

complete -F _extmerge extmerge systemd-sysext systemd-confext
complete -F _extmerge_initrd extmerge-initrd
